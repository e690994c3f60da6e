"""The fine-tuned MiniLM sentence encoder: tokenize, fine-tune, export to ONNX, embed and score.

Importing this package is cheap: torch, transformers and onnxruntime are imported inside the
functions that need them, and the serving side (`OnnxEncoder`) needs only onnxruntime,
tokenizers and numpy. Training side: `fine_tune` → `export_onnx` → `quantize_int8` →
`choose_precision`. Modules: tokens (offline tokenizer, padding, length buckets), train,
net (torch modules, imported lazily), export, runtime.
"""
