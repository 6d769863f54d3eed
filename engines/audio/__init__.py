"""Audio in: files decoded, checked and resampled to 16 kHz mono before any model sees them (speech to text)."""
