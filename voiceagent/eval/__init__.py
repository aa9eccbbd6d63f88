"""``voiceagent eval``: scenarios played as whole phone calls through the real service, and scored.

``scenario``: the file format (TOML) and its checks; ``caller``: the simulated caller (scripted turns or a
persona played by a second Realtime session); ``run``: one call of one scenario, in process or against
``--url``; ``score``: the expectations; ``report``: terminal table, Markdown and JUnit XML; ``command``:
the CLI.
"""
