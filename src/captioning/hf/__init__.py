"""`train.decoder: vit_gpt2`: a pretrained ViT encoder and GPT-2 decoder (Hugging Face transformers'
VisionEncoderDecoderModel), fine-tuned end to end from the resized images.

Optional: `pip install -e '.[hf]'`. Nothing here is imported unless that decoder is chosen, so the core
install and the other models never need transformers.
"""
