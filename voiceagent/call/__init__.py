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
    Log,
    LogLevel,
    PlayAudio,
    RecordLine,
    RunTool,
    SendToModel,
    UseNewModel,
)
from voiceagent.call.core import CallCore, CallOptions
from voiceagent.call.endings import EndReason, Farewell
from voiceagent.call.inputs import (
    BadInput,
    CallerAudio,
    CallerHungUp,
    Digit,
    PlayedUpTo,
    StreamStarted,
    TransportEvent,
)
from voiceagent.call.log_lines import log_line
from voiceagent.call.observations import (
    Accepted,
    AgentClosing,
    BargeIn,
    CallEnded,
    ConnectFailed,
    Observation,
    OperatorAnswer,
    ReasonDropped,
    ReasonsAnswered,
    Refused,
    ResponseRefused,
    ToolCalled,
    ToolNotRun,
)
from voiceagent.call.phases import CallCoreError, CallPhase, ModelPhase

__all__ = [
    "Accepted",
    "Action",
    "AgentClosing",
    "BadInput",
    "BargeIn",
    "CallCore",
    "CallCoreError",
    "CallEnded",
    "CallOptions",
    "CallPhase",
    "CallerAudio",
    "CallerHungUp",
    "ClearPlayback",
    "ConnectFailed",
    "ConnectModel",
    "ConnectPurpose",
    "Digit",
    "DropNewModel",
    "EndCall",
    "EndReason",
    "Farewell",
    "Log",
    "LogLevel",
    "ModelPhase",
    "Observation",
    "OperatorAnswer",
    "PlayAudio",
    "PlayedUpTo",
    "RecordLine",
    "ReasonDropped",
    "ReasonsAnswered",
    "Refused",
    "ResponseRefused",
    "ToolNotRun",
    "RunTool",
    "SendToModel",
    "StreamStarted",
    "ToolCalled",
    "TransportEvent",
    "UseNewModel",
    "log_line",
]
