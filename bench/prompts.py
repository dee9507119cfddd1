"""The short prompts, of different lengths, that the engine benchmarks send."""

PROMPTS = [
    "Once upon a time",
    "The capital of France is",
    "Write a short poem about the sea.",
    "In 1969, the first people to walk on the Moon",
    "def fibonacci(n):",
    "My favourite food is",
    "The three primary colours are",
    "Photosynthesis is the process by which plants",
]
