# %% [markdown]
# # 00 · Welcome: an agent in a sandbox, a model on the host, one governed port
#
# **What you will learn**
# - the architecture this course builds, and why each piece sits where it does;
# - which mode this course runs in on your machine (live or embedded), and why;
# - how to check that everything the course needs is in place.
#
# **Time:** 5 minutes · **Prerequisites:** none. Run the cells from top to bottom
# (Shift+Enter); every command you see is run for real and its output is printed below it.
#
# ## The architecture
# A coding agent usually sends your code and prompts to a model in the cloud. This course keeps
# the whole loop on your own machine: the agent runs **inside a sandbox**, and the model it calls
# is an **open-source model on your host**. No API keys, no egress, no cloud bill.
#
# ```
# host ──────────────────────────────────────────────────────────────────────
#   Docker Model Runner   localhost:12434   (OpenAI-compatible HTTP)
#         ▲
#   policy proxy: allow/deny rules, one audit record per request
#         ▲  the only way out of the sandbox
#   ┌─────┴──────── sandbox (sbx microVM) ───────────────────────────────┐
#   │ own loopback; HTTP(S)_PROXY=http://gateway.docker.internal:3128    │
#   │ curl http://host.docker.internal:12434/engines/llama.cpp/v1/…      │
#   │ agent · OpenAI SDK · your workspace                                │
#   └────────────────────────────────────────────────────────────────────┘
# ```
#
# - **The model runs on the host.** Model files are big and want the host's GPU; a sandbox is
#   a lean VM without it. Docker Model Runner (DMR) already runs there and serves every sandbox.
# - **The agent runs in the sandbox.** Whatever it does, it does inside a VM with its own kernel,
#   its own loopback and none of your host's secrets.
# - **One port crosses the boundary**, through sbx's policy proxy: it must be allowed explicitly,
#   and every request is logged.

# %% [markdown]
# ## Parameters
# The cell below is the notebook's `parameters` cell (papermill can override it). `MODE = None`
# means: use `LABKIT_MODE` if it is set, otherwise detect. Set `"live"` or `"embedded"` to force one.

# %% tags=["parameters"]
MODE = None

# %% [markdown]
# ## Which mode am I in?
# The course has two modes and reads the same in both:
#
# | | live | embedded |
# |---|---|---|
# | model server | Docker Model Runner | labkit's DMR-compatible server on real llama.cpp, with SmolLM2-135M |
# | sandbox | `sbx` microVM | a Linux namespace sandbox (bubblewrap): own loopback, own hostname |
# | policy and log | sbx's proxy | labkit's proxy with sbx's rule semantics and a JSONL audit log |
#
# `labkit.connect` looks at your machine and picks, per component: the real Docker Model Runner if
# one answers on `localhost:12434`, the real `sbx` if it is installed and initialised, and labkit's
# embedded implementation otherwise. It prints one line saying what it chose and why.

# %%
import labkit

lab = labkit.connect(mode=MODE)

# %% [markdown]
# **Where embedded mode differs from the real product:** the sandbox is a Linux namespace on your
# host, not a microVM, and the model is a 135M-parameter model, which is fine for connectivity but
# too small for real coding. Everything else (the commands, their output, the policy decisions and
# the audit log) is real, and the notebooks point out each difference where it shows.

# %% [markdown]
# ## Pre-flight check
# `labkit doctor` checks every prerequisite and prints one line each: ✓, or ✗ with the exact fix.
# What only live mode needs (Docker Model Runner, `sbx`) shows as `—` when the course runs in
# embedded mode: it does not stop the course. The last line
# says which mode `auto` selects and why. (Instructors: run this before class.)

# %% tags=["nbval-ignore-output"]
lab.host("labkit doctor")

# %% [markdown]
# ## Checkpoint

# %%
from labkit import checks

ready = checks.preflight(lab)

# %% [markdown]
# ## The course map
# | notebook | what you do |
# |---|---|
# | 01 | confirm the model server runs on the host; list and pull a model |
# | 02 | create a fresh sandbox |
# | 03 | allow the model port through the network policy |
# | 04 | look inside the sandbox |
# | 05 | the three networking facts, each demonstrated |
# | 06 | run inference across the boundary with `curl` |
# | 07 | a Python client with the OpenAI SDK inside the sandbox |
# | 08 | a coding agent in a sandbox against the local model; watch the log; break it; restore |
# | 09 | the pitch, troubleshooting reproduced live, the checkpoint verified, cleanup |
#
# **Your turn:** open a terminal in JupyterLab (File → New → Terminal) and run `labkit shell`.
# In that shell the course's commands (`docker model ls`, `sbx ls`) work in this mode, so you can
# type every step yourself.
#
# ## What's next
# Notebook **01**: confirm that the model server runs on the host, list its models and pull one.
#
# ## Resources
# - [Docker Sandboxes](https://docs.docker.com/ai/sandboxes/): the sandboxes, their CLI `sbx`,
#   and their network policy.
# - [Docker Model Runner](https://docs.docker.com/ai/model-runner/): the model server on the host.
# - [Run Claude Code in a Docker Sandbox with Docker Model Runner](https://docs.docker.com/guides/claude-code-sandbox-model-runner/):
#   Docker's own guide to the architecture of this course.
# - [The course's design](../docs/design.md): the two modes, and what embedded mode must
#   reproduce of the real tools.
