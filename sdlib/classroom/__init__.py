"""What the lessons' cells use around the ideas: exercise checkers and quizzes (checks, quiz), explorers
and diagrams (widgets, plot), and the tool that writes the student notebooks (student).

It imports the ideas (sdlib's top level) and never the recipes; nothing in the top level imports it.
"""
