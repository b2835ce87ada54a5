"""Recordings of real SMTP traffic: the format (models, reader, writer), and the
conversation follower that the recording proxy and the capture importer share.

Stdlib and ``smtpbench.protocol`` only, except ``pcap.py`` (dpkt).
"""

from smtpbench.recording.codec import FORMAT, VERSION
from smtpbench.recording.model import (
    Content,
    RecordedReply,
    RecordedSession,
    RecordedStep,
    Recording,
    RecordingHeader,
)
from smtpbench.recording.observer import Conversation
from smtpbench.recording.reader import RecordingError, read_header, read_recording
from smtpbench.recording.writer import RecordingWriter, write_recording

__all__ = [
    "FORMAT",
    "VERSION",
    "Content",
    "Conversation",
    "RecordedReply",
    "RecordedSession",
    "RecordedStep",
    "Recording",
    "RecordingError",
    "RecordingHeader",
    "RecordingWriter",
    "read_header",
    "read_recording",
    "write_recording",
]
