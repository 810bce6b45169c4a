"""Decoder registry: `train.decoder` name -> decoder class."""
from __future__ import annotations

from captioning.io import InputError
from captioning.models.decoders.attention_lstm import BahdanauGatedDecoder, SoftAttentionDecoder
from captioning.models.decoders.base import Decoder, DecoderConfig, ImageFeatures, State
from captioning.models.decoders.gru_init import GruInitDecoder
from captioning.models.decoders.lstm_init import LstmInitDecoder
from captioning.models.decoders.merge import MergeDecoder
from captioning.models.decoders.show_tell import ShowTellDecoder
from captioning.models.decoders.top_down import TopDownDecoder
from captioning.models.decoders.transformer import TransformerCaptionDecoder

DECODERS: dict[str, type[Decoder]] = {
    "show_tell": ShowTellDecoder,
    "lstm": LstmInitDecoder,            # the image as initial (h, c); 2 layers in the Inception-v3 report
    "gru_init": GruInitDecoder,
    "merge": MergeDecoder,              # the image joins after the LSTM (the DenseNet121 blog)
    "soft_attention": SoftAttentionDecoder,
    "bahdanau_gated": BahdanauGatedDecoder,
    "top_down": TopDownDecoder,         # Up-Down (Anderson et al. 2018): attention LSTM + language LSTM
    "transformer": TransformerCaptionDecoder,
}


def build_decoder(name: str, config: DecoderConfig) -> Decoder:
    if name not in DECODERS:
        raise InputError(f"train.decoder = {name!r}: not available; choose one of {sorted(DECODERS)}")
    return DECODERS[name](config)


__all__ = ["DECODERS", "Decoder", "DecoderConfig", "ImageFeatures", "State", "build_decoder"]
