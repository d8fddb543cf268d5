# %% [markdown]
# # 01 · Step 1: confirm the model server runs on the host
#
# **What you will learn**
# - how to list the models Docker Model Runner has, with the CLI and over HTTP;
# - how to pull a model, and what a failed pull looks like;
# - the exact model id an OpenAI client must send.
#
# **Time:** 5 minutes · **Prerequisites:** notebook 00.
#
# Everything in this step happens **on the host**: the model server is a host service, and the
# sandbox comes later.

# %% tags=["parameters"]
MODE = None
MODEL = None  # None: the mode's small default (embedded: ai/smollm2:135M-Q4_1)

# %%
import labkit
from labkit import checks, exercises, widgets

lab = labkit.connect(mode=MODE)
model = MODEL or lab.default_model
print(f"model for this course: {model}")

# %% [markdown]
# ## List the local models
# `docker model ls` lists the models in the local store. On a fresh machine the list is empty.

# %%
lab.host("docker model ls")

# %% [markdown]
# The same list over HTTP: this is the OpenAI-compatible endpoint every client (and, later, the
# sandbox) uses. `llama.cpp` in the path names the inference engine.

# %%
lab.host(f"curl -s http://localhost:{lab.port}/engines/llama.cpp/v1/models | head -20")

# %% [markdown]
# ## Pull a small model
# In live mode this module uses `ai/smollm2:360M-Q4_K_M`. Embedded mode ships one model inside a Python
# package, SmolLM2-135M-Instruct (Q4_1), and serves only that one; in live mode any model from
# Docker Hub works. The pull output is real: embedded mode copies the shipped file into its store.

# %%
lab.host(f"docker model pull {model}", timeout=900)  # live mode downloads: allow 15 minutes

# %% [markdown]
# Now the list has it. Note the **MODEL NAME** column drops `ai/` and `docker.io/`, while the HTTP
# list shows the full id (`docker.io/ai/…`). The server accepts both spellings; what it does not
# accept is a model you have not pulled.

# %%
lab.host("docker model ls")

# %%
lab.host(f"curl -s http://localhost:{lab.port}/engines/llama.cpp/v1/models")

# %% [markdown]
# ## Pick a model
# The picker below is fed from the model API (id, size, quantization). The rest of the course
# reads `picker.value`, so a model you pull later shows up here after a refresh.

# %% tags=["nbval-ignore-output"]
picker = widgets.ModelPicker(lab, value=model)
picker

# %% [markdown]
# ## What a failed pull looks like
# This module's live model is `ai/smollm2:360M-Q4_K_M`: a live pull downloads about 270 MB. In embedded
# mode it fails exactly the way Docker Model Runner fails for a model it cannot get (exit 1), plus
# one line on how to switch to live mode.

# %%
lab.host("docker model pull ai/smollm2:360M-Q4_K_M", timeout=900)

# %% [markdown]
# ## What just happened
# The host runs an OpenAI-compatible model server on port 12434. `docker model ls` and
# `GET /engines/llama.cpp/v1/models` are two views of one store, and a model has to be pulled before
# any request can name it.
#
# ## Your turn
# Requests must name a model **exactly** as the server knows it (this module's troubleshooting
# table, in notebook 09, calls this out). Set `MY_MODEL_ID` below to the `id` the HTTP list printed
# for your model, then run the checkpoint: it asks the server whether that id answers.
# The checkpoint's `exercise` line shows ✗ until you have done this: that is expected.

# %%
MY_MODEL_ID = ""  # paste the id here

# %% [markdown]
# <details><summary>Solution</summary>
#
# The HTTP list above prints `"id":"docker.io/ai/smollm2:135M-Q4_1"` in embedded mode, so:
# `MY_MODEL_ID = "docker.io/ai/smollm2:135M-Q4_1"`. In code: `MY_MODEL_ID = lab.model_ids()[0]`.
# </details>

# %% [markdown]
# ## Checkpoint

# %%
checks.step1_models(lab, model)
exercises.model_id(lab, MY_MODEL_ID)

# %% [markdown]
# ## What's next
# Notebook **02**: create a fresh sandbox, the place where the agent will run.
#
# ## Resources
# - [Docker Model Runner](https://docs.docker.com/ai/model-runner/): the model server on the host.
# - [Docker Model Runner's REST API](https://docs.docker.com/ai/model-runner/api-reference/): base URLs, routes, and the OpenAI, Anthropic and Ollama formats.
# - [`docker model` CLI reference](https://docs.docker.com/reference/cli/docker/model/): `ls`, `pull`, `rm`, `inspect`, `requests`.
# - [Docker Sandboxes](https://docs.docker.com/ai/sandboxes/): sandboxes, the `sbx` CLI, network policy.
# - [This repository's notes on DMR](../docs/sbx-dmr-facts.md) (Part 2): the routes, outputs and error bodies the embedded server reproduces.
