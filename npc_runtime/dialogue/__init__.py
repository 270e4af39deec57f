"""The dialogue stage: prompt, action grammar, tag parsing, one turn of speech and actions."""
