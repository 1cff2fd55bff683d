"""The last stage of a job: encoded audio to a bucket, a folder or the response, and what happens when it cannot.

``targets`` chooses where a job's audio goes and delivers it locally or inline; ``buckets`` uploads to
S3-compatible storage; ``undelivered`` keeps what could not be delivered, for a limited time.
"""

from inference.delivery.delivered import Delivered
from inference.delivery.files import write_bytes_atomically
from inference.delivery.targets import InlineTarget, LocalTarget, Target, choose_target, secrets_of

__all__ = ["Delivered", "InlineTarget", "LocalTarget", "Target", "choose_target", "secrets_of",
           "write_bytes_atomically"]
