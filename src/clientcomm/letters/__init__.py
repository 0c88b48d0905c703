"""Serial letters: PDF intake and merge (part 1) and the serial-letter run (part 2)."""
