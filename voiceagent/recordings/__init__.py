"""Call recordings (``VOICEAGENT_RECORDINGS=on``): a tap around the caller's transport and the WAV files
it feeds. Transport-neutral: it wraps any ``voiceagent.call.transport.Transport``."""

from voiceagent.recordings.recording import CallRecording, RecordingFiles, wav_header
from voiceagent.recordings.transport import RecordingTransport

__all__ = ["CallRecording", "RecordingFiles", "RecordingTransport", "wav_header"]
