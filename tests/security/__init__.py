"""Attacks on orchestra_nb through its public API and its command, and faults of its stores.

Each module takes one kind of untrusted input or failure: files written from
stored records, shared stores, plans written by a model, hostile LLM servers,
secrets, and stores that fill up, restart or race.
"""
