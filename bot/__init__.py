"""Loyalty Wallet Bot: entry point, settings and wiring."""
