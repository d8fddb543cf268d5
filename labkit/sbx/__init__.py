"""labkit's embedded Docker Sandboxes: namespaced sandboxes behind sbx's network policy.

What other code calls (everything returns the shared records of ``labkit.records``):

* sandboxes — ``runtime.create(agent, workspace, name)``, ``runtime.exec_command(name, argv,
  env=, workdir=, input=, timeout=)`` (captured), ``runtime.popen(name, argv, …)`` (streamed),
  ``runtime.stop(name)``, ``runtime.remove(name)``, ``runtime.list_sandboxes()``;
  errors are ``store.SandboxError`` / ``store.SandboxNotFound`` with the message to print.
* agents — ``runtime.create("codex"|"claude", …)`` puts that pinned agent (``labkit.agents.install``)
  on the guest's PATH, read-only (:mod:`.guest_agents`); ``runtime.agent_command(name)`` is what
  ``sbx run`` starts. Raw TCP to host.docker.internal:P goes relay → proxy (:mod:`.relay`).
* isolation — ``isolation.detect() -> Tier(name, reason, detail, fix)``: ``namespaced`` or the
  weaker ``process`` tier, probed once per process.
* policy — ``rules.load()``, ``rules.add("allow"|"deny", "RES[,RES…]", sandbox=)``,
  ``rules.remove(resource=|rule_id=, sandbox=)``, ``rules.init(preset)``, ``rules.reset()``,
  ``rules.check(target, sandbox=) -> policy.Verdict``; matching itself is ``policy.Policy``.
* audit — ``audit.read(sandbox=, decision=) -> [AuditRecord]``, ``audit.policy_log(sandbox=)
  -> [PolicyLogEntry]``, ``audit.follow(…)``.
* the proxy service — ``service.start() / stop() / status()`` (``labkit up|down|status``),
  ``service.tcp_port()``; sandbox commands start it on demand.

CLIs: ``labkit sbx …`` (:mod:`.cli`, :mod:`.policy_cli`) and ``labkit audit`` (:mod:`.audit`).
"""
