"""Pure domain rules shared by the capabilities: who may do what (access, by
action), who receives (audience) and what is unread for whom (read state).

Every function here takes facts and returns a decision; none does I/O. They are
tested directly and with hypothesis in ``tests/rules/``.
"""
