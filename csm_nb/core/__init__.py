"""The model and its frame loop, in torch alone: configs, the Llama transformer, CSM with the
official key names, rows, sampling, the frame step and generate_codes."""
