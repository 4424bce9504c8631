"""What every layer shares and that imports nothing of ours: errors, the null rule, secrets, a record's identity."""
