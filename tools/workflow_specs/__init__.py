"""The example workflows as data: the files they name and their download links (links), the graphs and how their
nodes are grouped (graphs), the notes in English (notes) and the Chinese copies (notes_zh), the app and the subgraph
blueprints (apps). tools/build_workflows.py turns them into the files in workflows/ and subgraphs/; adding a
workflow is adding an entry here."""
