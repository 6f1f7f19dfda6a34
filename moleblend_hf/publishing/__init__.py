"""Model cards, Hub push, official-checkpoint conversion and the checkpoints shipped in the package."""
