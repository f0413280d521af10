// The pybind11 bindings of the CPU instruction-set choice (kernels/simd.h): which copies of the
// vectorized CPU kernels (attention v3, GELU, LayerNorm's backward, chapter 12's families) this
// CPU can run, which one runs, and a switch to a lesser one, so that benchmarks can compare them
// and tests can check each.
#include <pybind11/pybind11.h>

#include <string>

#include "simd.h"

namespace py = pybind11;

void register_simd(py::module_& m) {
    using namespace tt::simd;
    m.def(
        "cpu_isas",
        [] {
            py::list names;
            for (Isa i : kIsas)
                if (isa_supported(i)) names.append(isa_name(i));
            return names;
        },
        "the instruction sets this CPU can run the vectorized kernels with, best first");
    m.def("cpu_isa", [] { return std::string(isa_name(current_isa())); },
          "the instruction set the vectorized CPU kernels use now");
    m.def(
        "set_cpu_isa",
        [](const std::string& name) {
            for (Isa i : kIsas)
                if (name == isa_name(i)) {
                    if (!isa_supported(i))
                        throw py::value_error("this CPU cannot run the " + name + " kernels");
                    std::string prev = isa_name(current_isa());
                    current_isa() = i;
                    return prev;
                }
            throw py::value_error("unknown instruction set '" + name +
                                  "'; expected avx512, avx2 or base");
        },
        py::arg("name"), "use instruction set `name` from now on; returns the previous one");
}
