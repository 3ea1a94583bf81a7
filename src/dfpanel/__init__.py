"""dfpanel: deepfake video detection by a panel of five specialists."""

__version__ = "0.1.0"
