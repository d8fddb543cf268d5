# %% [markdown]
# # 02 · Step 2: create a fresh sandbox
#
# **What you will learn**
# - how to create a sandbox with the `shell` agent (a plain bash, no AI attached);
# - what `sbx ls` tells you about it: agent, status, workspace.
#
# **Time:** 5 minutes · **Prerequisites:** notebook 01.
#
# The `shell` agent is the right start: before wiring up an agent, you test connectivity by hand.

# %% tags=["parameters"]
MODE = None
SANDBOX = "dmr-test"
WORKDIR = "/tmp/dmr-test"

# %%
import labkit
from labkit import checks, exercises

lab = labkit.connect(mode=MODE)

# %% [markdown]
# ## Make a workspace and create the sandbox
# This module does `mkdir -p /tmp/dmr-test && cd /tmp/dmr-test` and then creates the sandbox with the
# current folder (`.`) as its workspace. The workspace is mounted **read-write at the same path**
# inside the sandbox: that folder is the only part of your disk the sandbox sees.
#
# Re-running this notebook is safe: an existing sandbox is reused, not created twice.

# %%
lab.host(f"mkdir -p {WORKDIR}")

# %%
lab.sandbox(SANDBOX).create("shell", ".", cwd=WORKDIR, timeout=900)  # a first live create pulls an image

# %% [markdown]
# In embedded mode the output names the **isolation tier**: `namespaced` means bubblewrap gave the
# sandbox its own network, PID, IPC and hostname namespaces; `process` (on platforms that forbid
# namespaces, such as some hosted notebooks) is much weaker and is labelled so everywhere.

# %% [markdown]
# ## List sandboxes

# %%
lab.host("sbx ls")

# %% [markdown]
# `--json` gives the same as a document, which is what scripts should parse:

# %%
lab.host("sbx ls --json")

# %% [markdown]
# ## What just happened
# `sbx create` made a persistent sandbox: it keeps its own home folder across commands, like a VM
# disk, and it sees your workspace at the same path. Nothing runs in it yet, and it has **no network
# rule** that would let it reach the model: by default every destination is denied.
#
# ## Your turn
# Create a second sandbox named `dmr-scratch` on the same workspace and list both.
# (Notebook 09 removes every course sandbox at the end.) The checkpoint's `exercise` line shows ✗ until you have done this: that is expected.

# %%
# Exercise: create the sandbox `dmr-scratch` here

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# lab.host("sbx create --name dmr-scratch shell .", cwd=WORKDIR)
# lab.host("sbx ls")
# ```
# </details>

# %% [markdown]
# ## Checkpoint

# %%
checks.step2_sandbox(lab, SANDBOX, WORKDIR)
exercises.second_sandbox(lab, "dmr-scratch")

# %% [markdown]
# ## What's next
# Notebook **03**: allow the model port through the network policy, the one rule the sandbox needs.
#
# ## Resources
# - [Docker Sandboxes](https://docs.docker.com/ai/sandboxes/): sandboxes, the `sbx` CLI, network policy.
# - [`sbx create shell`](https://docs.docker.com/reference/cli/sbx/create/shell/) and the
#   [shell agent](https://docs.docker.com/ai/sandboxes/agents/shell/): a sandbox with a plain bash and no AI agent.
# - [Docker Model Runner](https://docs.docker.com/ai/model-runner/): the model server on the host.
