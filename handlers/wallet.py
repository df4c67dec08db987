"""Router placeholder: the feature module is being written (see handlers/__init__.py order)."""

from __future__ import annotations

from aiogram import Router

router = Router(name=__name__)
