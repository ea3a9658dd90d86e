"""The ground floor: errors, symbols, text read without running it, values
checked on the way in, time budgets, plain records, and text and LaTeX printing."""
