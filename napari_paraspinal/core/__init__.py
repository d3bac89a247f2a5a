"""Headless core: geometry-carrying slices, label table, readers and writers. No Qt here."""
