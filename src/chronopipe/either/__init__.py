"""Either: Right (a value), Left (an error) or Pending (not known yet), with Kleisli composition."""

from .core import Either, Left, Pending, Right, attempt, kleisli, settle

__all__ = ["Either", "Left", "Pending", "Right", "attempt", "kleisli", "settle"]
