"""The model-folder contract: what a folder holds (`artifacts`), its checksums (`manifest`), its known
answers (`selftest`, recorded by `known_answers`), its card (`report`), and loading its files (`loading`, `engines`)."""
