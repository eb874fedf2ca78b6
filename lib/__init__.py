"""Client libraries and code shared by the executive and its clients."""
