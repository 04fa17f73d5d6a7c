"""A literal transcription of the reference network ("Make Your Own Neural Network", T. Rashid).

Kept as close to the book's code as possible so that tests compare against it, not against
our reading of it. Only the initial weights are injectable, so both start from the same point.
"""

from __future__ import annotations

import numpy
import scipy.special


class ReferenceNetwork:
    def __init__(self, inputnodes, hiddennodes, outputnodes, learningrate, wih=None, who=None):  # type: ignore[no-untyped-def]
        self.inodes = inputnodes
        self.hnodes = hiddennodes
        self.onodes = outputnodes
        if wih is None:  # the book's constructor, with numpy's global RNG
            self.wih = numpy.random.normal(0.0, pow(self.hnodes, -0.5), (self.hnodes, self.inodes))
            self.who = numpy.random.normal(0.0, pow(self.onodes, -0.5), (self.onodes, self.hnodes))
        else:
            self.wih, self.who = numpy.array(wih, dtype=float), numpy.array(who, dtype=float)
        self.lr = learningrate
        self.activation_function = lambda x: scipy.special.expit(x)

    def train(self, inputs_list, targets_list):  # type: ignore[no-untyped-def]
        inputs = numpy.array(inputs_list, ndmin=2).T
        targets = numpy.array(targets_list, ndmin=2).T
        hidden_inputs = numpy.dot(self.wih, inputs)
        hidden_outputs = self.activation_function(hidden_inputs)
        final_inputs = numpy.dot(self.who, hidden_outputs)
        final_outputs = self.activation_function(final_inputs)
        output_errors = targets - final_outputs
        hidden_errors = numpy.dot(self.who.T, output_errors)
        self.who += self.lr * numpy.dot(
            (output_errors * final_outputs * (1.0 - final_outputs)), numpy.transpose(hidden_outputs)
        )
        self.wih += self.lr * numpy.dot(
            (hidden_errors * hidden_outputs * (1.0 - hidden_outputs)), numpy.transpose(inputs)
        )

    def query(self, inputs_list):  # type: ignore[no-untyped-def]
        inputs = numpy.array(inputs_list, ndmin=2).T
        hidden_outputs = self.activation_function(numpy.dot(self.wih, inputs))
        return self.activation_function(numpy.dot(self.who, hidden_outputs))


def reference_epoch(net: ReferenceNetwork, pixels, labels) -> None:  # type: ignore[no-untyped-def]
    """The book's training loop body over pre-parsed rows (pixels uint8 (n, 784), labels (n,))."""
    for row, label in zip(pixels, labels, strict=True):
        inputs = (numpy.asarray(row, dtype=float) / 255.0 * 0.99) + 0.01
        targets = numpy.zeros(net.onodes) + 0.01
        targets[int(label)] = 1.0
        net.train(inputs, targets)
