"""`python -m bot demo`: the whole program on one machine, without Telegram.

The real bot (dispatcher, outbox, scheduler, database) runs against a built-in Telegram Bot API
emulator (`bot.demo.emulator`, the same one the end-to-end tests drive), and a web page shows
three chats side by side: a customer, the cashiers' staff group and the owner.
"""
