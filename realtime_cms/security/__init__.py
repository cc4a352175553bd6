"""Password hashing, token generation and hashing."""
