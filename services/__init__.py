"""The domain: plain Python, no aiogram (except `services.delivery`), no user-facing text."""
