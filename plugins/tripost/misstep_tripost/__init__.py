"""misstep-tripost: TriPosT for misstep: scripted tasks and verifiers, interactive editing, weighted self-improvement SFT."""
