"""One phone line on several instances: the state they share and the bus between them.

``shared`` declares the interfaces, ``local`` is the one-instance backend (in process: SQLite, or no
store at all), ``postgres`` the several-instance one (tables in the store's database, LISTEN/NOTIFY for
the bus), and ``node`` ties one service to them.
"""

from voiceagent.line.shared import Bus, Message, SharedState

__all__ = ["Bus", "Message", "SharedState"]
