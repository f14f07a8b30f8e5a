"""slurmrestd's API as a scheduler client: its tokens, its job properties and the client apart."""
