"""Operator tools: functions the model may call during a call, to look things up and to act.

Two kinds, both checked at start-up by ``load_toolbox`` (a ``ToolConfigError`` names the tool and what is
wrong):

* Python tools (``VOICEAGENT_TOOLS=module[,module]``): the ``@tool`` functions of importable modules, plain
  or ``async``. The function's name is the tool's name, the first paragraph of its docstring the
  description, its type hints the arguments' JSON schema (via pydantic; parameter descriptions from
  ``Annotated[T, "..."]``, ``Annotated[T, Field(description=...)]`` or an ``Args:`` docstring section)::

      from voiceagent.tools import tool

      @tool
      async def check_availability(party_size: int, time: str) -> dict:
          \"\"\"Check which tables are free tonight for a party of this size around this time.\"\"\"
          ...

  The arguments are validated by pydantic (lax: ``"2"`` is 2, ``"two"`` is an error) before the call. An
  ``async`` function is awaited; a plain one runs in a worker thread, so it never holds up the audio.
* HTTP tools (``VOICEAGENT_TOOLS_FILE=tools.json``): requests to a service, see ``voiceagent.tools.http``.

What the model gets back (``ToolResult.output``) is always a JSON object: an answer that is a JSON object
(a dict, a dataclass, a pydantic model, a JSON response body) as it is; any other answer, a plain string
included, as ``{"result": ...}``; a failure as ``{"error": "..."}``. At most 8192 characters: a longer
answer is cut, and says so. ``ToolBox.run`` never raises: an unknown tool, arguments that are not JSON or
do not fit the schema, a timeout, an exception, an HTTP error status all come back with ``ok=False``.
"""

from voiceagent.tools.base import Tool, ToolConfigError, ToolResult
from voiceagent.tools.box import ToolBox, load_toolbox
from voiceagent.tools.python import tool

__all__ = ["Tool", "ToolBox", "ToolResult", "ToolConfigError", "tool", "load_toolbox"]
