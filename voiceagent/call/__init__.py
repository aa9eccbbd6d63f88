"""The call core: a sans-I/O state machine per call, with its own transport-neutral vocabulary.

Inputs: ``voiceagent.call.inputs`` (from the caller's transport), ``voiceagent.realtime.events`` (from
the model), and time. Outputs: ``voiceagent.call.actions``. Nothing here performs I/O or knows Twilio.
"""

from voiceagent.call.actions import (
    Action,
    ClearPlayback,
    ConnectModel,
    ConnectPurpose,
    DropNewModel,
    EndCall,
    Farewell,
    Log,
    PlayAudio,
    RecordLine,
    RunTool,
    SendToModel,
    UseNewModel,
)
from voiceagent.call.core import CallCore, CallOptions
from voiceagent.call.inputs import (
    BadInput,
    CallerAudio,
    CallerHungUp,
    Digit,
    PlayedUpTo,
    StreamStarted,
    TransportEvent,
)
from voiceagent.call.phases import CallPhase, ModelPhase

__all__ = [
    "Action",
    "BadInput",
    "CallCore",
    "CallOptions",
    "CallPhase",
    "CallerAudio",
    "CallerHungUp",
    "ClearPlayback",
    "ConnectModel",
    "ConnectPurpose",
    "Digit",
    "DropNewModel",
    "EndCall",
    "Farewell",
    "Log",
    "ModelPhase",
    "PlayAudio",
    "PlayedUpTo",
    "RecordLine",
    "RunTool",
    "SendToModel",
    "StreamStarted",
    "TransportEvent",
    "UseNewModel",
]
