# %% [markdown]
# # 04 · Step 4: look inside the sandbox
#
# **What you will learn**
# - how to run commands inside a sandbox (`sbx exec`) and how to attach to it (`sbx run`);
# - what is inside: its own hostname, its own system, your workspace and nothing else of your host.
#
# **Time:** 5 minutes · **Prerequisites:** notebook 02.

# %% tags=["parameters"]
MODE = None
SANDBOX = "dmr-test"
WORKDIR = "/tmp/dmr-test"

# %%
import labkit
from labkit import checks, exercises

lab = labkit.connect(mode=MODE)
box = lab.prepare(sandbox=SANDBOX, workdir=WORKDIR)  # what notebook 02 made, made here if missing

# %% [markdown]
# ## `sbx run` vs `sbx exec`
# This module attaches with `sbx run dmr-test` and lands at a prompt like `agent@dmr-test:dmr-test$`.
# That is interactive: it needs a terminal. In a JupyterLab terminal, run `labkit shell`, then
# `sbx run dmr-test` (type `exit` to leave). A notebook cell has no terminal, so here we use
# `sbx exec SANDBOX COMMAND`, which runs one command inside and passes its output and exit code back.

# %%
box.exec("hostname")

# %% [markdown]
# A command line with a pipe runs under `bash -c` inside the sandbox (`sbx exec` runs one program,
# not a shell line):

# %%
box.exec("cat /etc/os-release | head -2")

# %% [markdown]
# **Embedded mode differs here:** sbx's microVM boots a clean Ubuntu image (Ubuntu 25.10 when this
# module was written); labkit's namespace sandbox shares your host's read-only system, so it shows your
# host's distribution. What is private to the sandbox is its hostname, network, processes, home and
# `/tmp`.

# %%
box.exec("bash -c 'echo user=$(id -un) home=$HOME; ls /home'")

# %% [markdown]
# Its processes: with its own PID namespace the sandbox sees only the few it runs itself (the exact
# number changes from run to run), where your host runs hundreds:

# %%
pids = [name for name in box.exec("ls /proc", echo=False).stdout.split() if name.isdigit()]
print("processes visible inside the sandbox:", "fewer than 10" if len(pids) < 10 else len(pids))

# %% [markdown]
# The workspace is the same folder on both sides:

# %%
box.exec("pwd")

# %% [markdown]
# ## What just happened
# `sbx exec` ran each command inside the sandbox: its hostname is the sandbox's name, it has its own
# user and home and sees only a handful of its own processes, and its working folder is your
# workspace at the same path as on the host.
#
# ## Your turn
# From inside the sandbox, write the sandbox's hostname into a file `hello-from-sandbox.txt` in the
# workspace (`hostname > …`, run inside), then read it on the host with `cat` (run through
# `lab.host`): the hostname proves the file was written in there. The checkpoint's `exercise` line
# shows ✗ until you have done this: that is expected.

# %%
# Exercise: write the file inside, read it on the host

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# box.exec("bash -c 'hostname > hello-from-sandbox.txt'")
# lab.host("cat hello-from-sandbox.txt", cwd=WORKDIR)
# ```
# </details>

# %% [markdown]
# ## Checkpoint

# %%
checks.step4_inside(lab, SANDBOX)
exercises.workspace_file(WORKDIR, "hello-from-sandbox.txt", SANDBOX, "the sandbox's hostname")

# %% [markdown]
# ## What's next
# Notebook **05**: the three networking facts inside a sandbox, each demonstrated.
#
# ## Resources
# - [Docker Sandboxes](https://docs.docker.com/ai/sandboxes/): sandboxes, the `sbx` CLI, network policy.
# - [`sbx exec`](https://docs.docker.com/reference/cli/sbx/exec/): its flags follow `docker exec`.
# - [Docker Model Runner](https://docs.docker.com/ai/model-runner/): the model server on the host.
