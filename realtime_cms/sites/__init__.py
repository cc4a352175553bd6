"""Sites of this installation and their members."""
