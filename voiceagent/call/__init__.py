"""The call core: a sans-I/O state machine per call, with its own transport-neutral vocabulary.

Inputs: ``voiceagent.call.inputs`` (from the caller's transport), ``voiceagent.realtime.events`` (from
the model), and time. Outputs: ``voiceagent.call.actions``. Nothing here performs I/O or knows Twilio.

The package exports what each module lists in its own ``__all__`` (one list per name, kept beside it).
"""

from voiceagent.call import actions, core, endings, inputs, log_lines, observations, phases
from voiceagent.call.actions import *  # noqa: F403
from voiceagent.call.core import *  # noqa: F403
from voiceagent.call.endings import *  # noqa: F403
from voiceagent.call.inputs import *  # noqa: F403
from voiceagent.call.log_lines import *  # noqa: F403
from voiceagent.call.observations import *  # noqa: F403
from voiceagent.call.phases import *  # noqa: F403

__all__: list[str] = []
__all__ += actions.__all__
__all__ += core.__all__
__all__ += endings.__all__
__all__ += inputs.__all__
__all__ += log_lines.__all__
__all__ += observations.__all__
__all__ += phases.__all__
