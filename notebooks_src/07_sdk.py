# %% [markdown]
# # 07 · Step 7: a Python client with the OpenAI SDK, inside the sandbox
#
# **What you will learn**
# - the pattern every real agent uses: the OpenAI SDK with `base_url` pointed at the local model;
# - that it needs no API key and no egress;
# - streaming: the reply arriving token by token across the boundary;
# - the two APIs coding agents speak (OpenAI's Responses, Anthropic's Messages), served by the same model.
#
# **Time:** 10 minutes · **Prerequisites:** notebooks 01–03.

# %% tags=["parameters"]
MODE = None
MODEL = None  # None: the mode's default model
SANDBOX = "dmr-test"
WORKDIR = "/tmp/dmr-test"

# %%
import json

import labkit
from labkit import checks, exercises

lab = labkit.connect(mode=MODE)
model = MODEL or lab.default_model
box = lab.prepare(model=model, sandbox=SANDBOX, workdir=WORKDIR, allow_model_port=True)  # 01–03, if missing

# %% [markdown]
# ## Write `test_local.py` inside the sandbox
# This module's script, with your model. It is written from inside the sandbox into the workspace,
# so it appears on the host too.

# %%
script = f'''from openai import OpenAI

client = OpenAI(
    base_url="http://host.docker.internal:{lab.port}/engines/llama.cpp/v1",
    api_key="not-needed",
)
resp = client.chat.completions.create(
    model="{model}",
    messages=[{{"role": "user", "content": "Write a Python function that reads a CSV and counts rows."}}],
    max_tokens=200,
)
print(resp.choices[0].message.content)
'''
box.exec(["bash", "-c", "cat > test_local.py"], input=script)

# %% [markdown]
# ## Install the SDK and run it
# This module installs the SDK inside the sandbox. In embedded mode the course's Python environment is
# already visible inside, so pip finds `openai` (and `anthropic`, used below) installed and changes nothing. In live mode pip
# downloads it through the proxy (the `balanced` preset allows PyPI). `-q` keeps pip to what matters: errors,
# not one "Requirement already satisfied" line per package.

# %% tags=["nbval-ignore-output"]
box.exec("pip install -q --break-system-packages openai anthropic", timeout=300)

# %% tags=["nbval-ignore-output"]
run = box.exec("python3 test_local.py", timeout=300)

# %% [markdown]
# The model's code differs from run to run (and from a 135M model it is often wrong). What does not
# differ:

# %%
print("exit code:", run.returncode)
print("printed a reply:", bool(run.stdout.strip()))

# %% [markdown]
# ## Streaming
# Agents stream, so the user sees progress. The same client with `stream=True`; each chunk is
# printed the moment it crosses the boundary:

# %%
stream_script = f'''import time
from openai import OpenAI

client = OpenAI(base_url="http://host.docker.internal:{lab.port}/engines/llama.cpp/v1", api_key="not-needed")
start = time.monotonic()
chunks = 0
for chunk in client.chat.completions.create(
        model="{model}", stream=True, max_tokens=60,
        messages=[{{"role": "user", "content": "Name three colours."}}]):
    text = chunk.choices[0].delta.content or "" if chunk.choices else ""
    chunks += 1
    print(text, end="", flush=True)
print()
print(f"STREAM chunks={{chunks}}")
'''
box.exec(["bash", "-c", "cat > test_stream.py"], input=stream_script)

# %% tags=["nbval-ignore-output"]
streamed = box.exec("python3 test_stream.py", timeout=300)

# %%
print("streamed in more than one chunk:", int(streamed.stdout.rsplit("chunks=", 1)[-1]) > 1)

# %% [markdown]
# ## The APIs coding agents speak
# Current coding agents do not call chat completions: Codex speaks OpenAI's **Responses** API and
# Claude Code Anthropic's **Messages** API. Docker Model Runner serves both on the same port (and
# Ollama's API under `/api/…`) by translating them onto the model's chat completions. From inside
# the sandbox, through the same proxy and the same rule, with each vendor's own SDK:

# %%
agent_apis_script = f'''from anthropic import Anthropic
from openai import OpenAI

openai = OpenAI(base_url="http://host.docker.internal:{lab.port}/v1", api_key="not-needed")
r = openai.responses.create(model="{model}", input="Name one colour.", max_output_tokens=20)
print("Responses API:", r.status, repr(r.output_text))

claude = Anthropic(base_url="http://host.docker.internal:{lab.port}", api_key="not-needed")
m = claude.messages.create(model="{model}", max_tokens=20,
                           messages=[{{"role": "user", "content": "Name one colour."}}])
print("Messages API:", m.stop_reason, repr(m.content[0].text))
'''
box.exec(["bash", "-c", "cat > test_agent_apis.py"], input=agent_apis_script)

# %% tags=["nbval-ignore-output"]
apis = box.exec("python3 test_agent_apis.py", timeout=300)

# %% [markdown]
# The words differ from run to run; the shape does not. Base URLs: the OpenAI SDK gets `…:12434/v1`
# (every DMR version answers Responses there; `/engines/v1/responses` only newer ones), the
# Anthropic SDK the bare `…:12434` (it adds `/v1/messages` itself). Neither needs a key.

# %%
print("Responses API completed:", "Responses API: completed" in apis.stdout)
print("Messages API answered:", "Messages API: end_turn" in apis.stdout or "Messages API: max_tokens" in apis.stdout)

# %% [markdown]
# ## Two logs, two jobs
# Every request above crossed the boundary, so the policy log counts them, per destination, from the
# proxy's decisions on disk: the rule that allowed them, how often, when.

# %%
lab.host(f"sbx policy log {SANDBOX}")

# %% [markdown]
# The model runner keeps a log of its own: `docker model requests` shows the last 10 requests per
# model with their bodies and answers. It is a debugging aid (what exactly did the agent send?),
# kept in memory; the policy log is the boundary's record (what tried to leave, and was it allowed?).
# It prints JSON (a list of `{"count", "model", "config", "records"}`); the newest three records, one
# line each:

# %% tags=["nbval-ignore-output"]
requests_log = lab.host(f"docker model requests --model {model}", echo=False)
print(f"$ docker model requests --model {model}   # summarised: method, path, status, client")
for record in json.loads(requests_log.stdout)[0]["records"][-3:]:
    print(record["method"], record["url"], record["status_code"], record.get("user_agent", ""))

# %% [markdown]
# ## What just happened
# A Python program inside the sandbox used the standard OpenAI SDK with `base_url` set to the host's
# model API and a dummy key. Its requests crossed through the proxy like curl's did; nothing left
# your machine.
#
# ## Your turn
# Write your own `my_client.py` in the workspace that asks the model any question with the SDK, and
# run it inside the sandbox. The checkpoint looks for the file and an allowed chat request.
# The checkpoint's `exercise` line shows ✗ until you have done this: that is expected.

# %%
# Exercise: my_client.py

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# box.exec(["bash", "-c", "cat > my_client.py"], input=script.replace("reads a CSV and counts rows", "adds two numbers"))
# box.exec("python3 my_client.py")
# ```
# </details>

# %% [markdown]
# ## Checkpoint

# %%
checks.step7_sdk(lab, SANDBOX, WORKDIR, run)
exercises.workspace_file(WORKDIR, "my_client.py")

# %% [markdown]
# ## What's next
# Notebook **08**: a real coding agent in a sandbox against the local model; watch its traffic, break it, restore it.
#
# ## Resources
# - [Docker Model Runner](https://docs.docker.com/ai/model-runner/): the model server on the host.
# - [Docker Model Runner's REST API](https://docs.docker.com/ai/model-runner/api-reference/): base URLs, routes, and the OpenAI, Anthropic and Ollama formats.
# - [`docker model requests`](https://docs.docker.com/reference/cli/docker/model/requests/): the model runner's own request log.
# - The SDKs: [OpenAI Python](https://github.com/openai/openai-python) and
#   [Anthropic Python](https://github.com/anthropics/anthropic-sdk-python).
# - [Docker Sandboxes](https://docs.docker.com/ai/sandboxes/): sandboxes, the `sbx` CLI, network policy.
