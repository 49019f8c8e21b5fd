"""Scratchpad Patching: a tokenizer-free byte-level LM library (model, config, checkpoints)."""
from scratchpad.checkpoint import load_model, save_model
from scratchpad.config import ModelConfig
from scratchpad.errors import UserError
from scratchpad.model import ModelOutput, ScratchpadLM, build_model
from scratchpad.trigger import Trigger

__all__ = ["load_model", "save_model", "ModelConfig", "ModelOutput", "ScratchpadLM", "Trigger", "UserError",
           "build_model"]
