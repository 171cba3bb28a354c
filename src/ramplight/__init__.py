"""Ramplight: release decisions for AI features.

Applications import the SDK from here: `from ramplight import Client`.
"""

from ramplight.core.errors import RamplightError
from ramplight.core.evaluate import Evaluation
from ramplight.sdk.client import Client, ExposureScope

__all__ = ["Client", "Evaluation", "ExposureScope", "RamplightError"]
__version__ = "0.1.0"
