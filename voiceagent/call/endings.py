"""How a call ends: why (a closed set, what metrics label and dashboards count; the words of each end,
``EndCall.detail``, say the rest) and what the caller hears after the stream."""

from __future__ import annotations

from enum import Enum, StrEnum

__all__ = ["EndReason", "Farewell"]


class EndReason(StrEnum):
    CALLER_HUNG_UP = "caller_hung_up"  # or the caller's stream closed
    AGENT_HUNG_UP = "agent_hung_up"  # the model called end_call
    AGENT_TRANSFERRED = "agent_transferred"  # the model called transfer_call
    OPERATOR_HUNG_UP = "operator_hung_up"
    OPERATOR_TRANSFERRED = "operator_transferred"
    MAX_LENGTH = "max_length"  # VOICEAGENT_MAX_CALL_SECONDS
    CALLER_SILENT = "caller_silent"  # VOICEAGENT_CALLER_SILENCE_SECONDS
    NO_STREAM = "no_stream"  # pre-warmed, and no media stream came
    STREAM_SILENT = "stream_silent"  # the media stream stopped sending audio
    BAD_INPUT = "bad_input"  # too many malformed messages on the media stream
    MODEL_UNREACHABLE = "model_unreachable"  # every connect attempt failed
    MODEL_REFUSED = "model_refused"  # the model rejected the session
    MODEL_AUDIO_FORMAT = "model_audio_format"  # the model will not use μ-law
    MODEL_UNCONFIRMED = "model_unconfirmed"  # the session was never confirmed
    MODEL_UNRESPONSIVE = "model_unresponsive"  # the caller's turn got no response
    MODEL_FAILED = "model_failed"  # a response failed, and so did the retry
    REFUSED = "refused"  # turned away at admission (at capacity, draining)
    SHUTDOWN = "shutdown"  # the service is shutting down
    INTERNAL_ERROR = "internal_error"  # a bug in one call's driver


class Farewell(Enum):
    """What the caller hears once the stream is over (the ``<Connect action>`` answer)."""

    HANG_UP = "hang_up"  # nothing more: the agent already said goodbye, or the caller hung up
    UNAVAILABLE = "unavailable"  # the model could not be reached or failed: VOICEAGENT_UNAVAILABLE_MESSAGE
    BUSY = "busy"  # refused at capacity or while draining: VOICEAGENT_BUSY_MESSAGE
    TRANSFER = "transfer"  # hand the caller to a person: <Dial> to ``EndCall.transfer_to``
