"""voiceagent: a phone number answered by the OpenAI Realtime API through Twilio Media Streams."""

__version__ = "0.1.0"
