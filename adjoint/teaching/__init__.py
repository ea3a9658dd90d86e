"""Teaching: the derivation step by step, drawings, and self-contained HTML."""
