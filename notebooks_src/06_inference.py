# %% [markdown]
# # 06 · Step 6: run inference across the boundary
#
# **What you will learn**
# - how to send a chat completion from inside the sandbox to the model on the host;
# - what comes back (OpenAI's JSON shape) and what the audit log records about it.
#
# **Time:** 10 minutes · **Prerequisites:** notebooks 01–03.

# %% tags=["parameters"]
MODE = None
MODEL = None  # None: the mode's default model
SANDBOX = "dmr-test"
WORKDIR = "/tmp/dmr-test"
PROMPT = "Reply with exactly: sbx to DMR works"

# %%
import json
import shlex

import labkit
from labkit import checks, exercises, widgets

lab = labkit.connect(mode=MODE)
model = MODEL or lab.default_model
box = lab.prepare(model=model, sandbox=SANDBOX, workdir=WORKDIR, allow_model_port=True)  # 01–03, if missing

# %% [markdown]
# ## A chat completion with curl, from inside
# This module's command, with the model you pulled. The model id must be passed **verbatim**: a
# quantization tag such as `:135M-Q4_1` is part of the name.

# %%
body = json.dumps({"model": model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 20})
command = (f"curl -s http://host.docker.internal:{lab.port}/engines/llama.cpp/v1/chat/completions "
           f"-H 'Content-Type: application/json' -d {shlex.quote(body)}")

# %% tags=["nbval-ignore-output"]
reply = box.exec(command)

# %% [markdown]
# The cell above shows the model's words, which differ from run to run. This one checks the shape,
# which does not:

# %%
answer = lab.read_chat(reply)  # the JSON, or one line saying what came instead (a 403, an error)
print("object:", answer["object"])
print("keys:", sorted(answer))
print("choices[0].message.role:", answer["choices"][0]["message"]["role"])
print("has content:", bool(answer["choices"][0]["message"]["content"].strip()))
print("usage keys:", sorted(answer["usage"]))

# %% [markdown]
# A 135M model rarely replies *exactly* as asked; that is the point of this module's tip: small models
# prove connectivity, larger ones (`ai/qwen3:8B-Q4_K_M` in live mode) write useful code.
#
# ## Try it yourself: the prompt panel
# Type a prompt and press **Send** (or Ctrl+Enter): the request goes from inside the sandbox through the proxy,
# and the reply streams in as the model writes it, with latency and tokens per second.

# %% tags=["nbval-ignore-output"]
panel = widgets.PromptPanel(lab, model=model, sandbox=SANDBOX)
panel

# %% [markdown]
# ## What just happened
# An OpenAI-compatible request left the sandbox for `host.docker.internal:12434`, the proxy allowed
# it by the `localhost:12434` rule, the model on the host answered, and the audit log recorded a
# `POST …/chat/completions` with status 200:

# %%
lab.host(f"sbx policy log {SANDBOX}")

# %% [markdown]
# ## Your turn
# Change the prompt and send a second chat completion of your own (edit `PROMPT` and re-run the curl
# cell, or use the prompt panel). The checkpoint counts this sandbox's chat completions in the audit
# records: it wants at least two. The checkpoint's `exercise` line shows ✗ until you have done this: that is expected.

# %%
# Exercise: send a second chat completion with your own prompt

# %% [markdown]
# <details><summary>Solution</summary>
#
# Set `PROMPT = "In one sentence, what is a sandbox?"` in the parameters cell and run the notebook
# again, or type it into the prompt panel and press Send.
# </details>

# %% [markdown]
# ## Checkpoint

# %%
checks.step6_chat(lab, SANDBOX, answer)
exercises.prompt_sent(lab, SANDBOX)

# %% [markdown]
# ## What's next
# Notebook **07**: the same request from a Python program, with the OpenAI SDK, streaming.
#
# ## Resources
# - [Docker Model Runner](https://docs.docker.com/ai/model-runner/): the model server on the host.
# - [Docker Model Runner's REST API](https://docs.docker.com/ai/model-runner/api-reference/): base URLs, routes, and the OpenAI, Anthropic and Ollama formats.
# - [OpenAI's chat completions API](https://platform.openai.com/docs/api-reference/chat): the request and response shapes used here.
# - [Docker Sandboxes](https://docs.docker.com/ai/sandboxes/): sandboxes, the `sbx` CLI, network policy.
