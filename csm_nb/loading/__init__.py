"""Where things come from: modes (real / tiny / auto), the hub (the one place that downloads),
CSM weights from a folder or the hub, and the tokenizer."""
