import misstep
import misstep_example


def test_components_register_and_work():
    plugins = misstep.Plugins(entry_points=False)
    plugins.add(misstep_example, "example")
    tasks = list(plugins.create("task", "times-table", {"count": 3, "seed": 1}).load())
    assert len(tasks) == 3
    a, b = (int(w) for w in tasks[0].question.removeprefix("What is ").removesuffix("?").split(" times "))
    assert tasks[0].answer == a * b
    verifier = plugins.create("verifier", "same-parity")
    assert verifier.verify(tasks[0], str(tasks[0].answer + 2)).correct
    assert not verifier.verify(tasks[0], str(tasks[0].answer + 1)).correct
