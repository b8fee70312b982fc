"""Records in and out: input parsing, image decoding, JSONL writing."""
