"""tunelab's training program; the contract is in README.md."""
