// Streams the fingerprints of four training steps into a medscore::Memory, prints each wrong
// rollout's penalty, then saves, reloads and checks the reloaded memory answers the next step
// exactly as the original. The output is deterministic (expected_output.txt); the steps are
// those of examples/embed_c, which prints the same penalties through the C API.
#include <medscore/medscore.hpp>

#include <cstdint>
#include <cstdio>
#include <exception>
#include <limits>
#include <stdexcept>
#include <vector>

namespace {

constexpr int kKeys = 3, kRollouts = 8, kDim = 8, kN = kKeys * kRollouts, kSteps = 4;

/// A 64-bit linear congruential generator: the same numbers on every platform.
struct Lcg {
    uint64_t state = 42;
    double uniform() {
        state = state * 6364136223846793005ULL + 1442695040888963407ULL;
        return static_cast<double>(state >> 11) / 9007199254740992.0;
    }
};

/// One step's rollouts: prompt k has k + 1 typical mistakes (directions) and its wrong
/// rollouts land near one of them, except the last rollout of the last prompt, which makes a
/// new mistake every step.
struct Step {
    std::vector<double> fingerprints = std::vector<double>(kN * kDim);
    std::vector<int64_t> keys = std::vector<int64_t>(kN);
    std::vector<uint8_t> correct = std::vector<uint8_t>(kN);
};

Step make_step(Lcg& rng, const std::vector<double>& mistakes) {
    Step s;
    for (int i = 0; i < kN; ++i) {
        const int key = i / kRollouts, rollout = i % kRollouts;
        s.keys[i] = 1000 + 17 * key;
        s.correct[i] = rollout % 4 == 0;
        const bool fresh = s.correct[i] || (key == kKeys - 1 && rollout == kRollouts - 1);
        for (int j = 0; j < kDim; ++j) {
            const double centre = fresh ? rng.uniform() - 0.5 : mistakes[(key * kKeys + rollout % (key + 1)) * kDim + j];
            s.fingerprints[i * kDim + j] = centre + 0.01 * (rng.uniform() - 0.5);
        }
    }
    return s;
}

medscore::Penalties penalize(medscore::Memory& memory, const Step& s, int64_t step) {
    return memory.penalize({s.fingerprints.data(), kN, kDim}, s.keys.data(), s.correct.data(), nullptr, step);
}

void print_step(int step, const Step& s, const medscore::Penalties& p) {
    for (int k = 0; k < kKeys; ++k) {
        std::printf("step %d key %lld:", step, static_cast<long long>(s.keys[k * kRollouts]));
        for (int r = 0; r < kRollouts; ++r) {
            const int i = k * kRollouts + r;
            if (s.correct[i]) std::printf("    ok ");
            else std::printf(" %.4f", p.penalties[i]);
        }
        std::printf("\n");
    }
}

}  // namespace

int main(int argc, char** argv) try {
    const char* path = argc > 1 ? argv[1] : "embed_cpp_memory.ckpt";
    Lcg rng;
    std::vector<double> mistakes(kKeys * kKeys * kDim);
    for (double& m : mistakes) m = rng.uniform() - 0.5;

    medscore::MemoryOptions options;  // medscore.Memory's defaults
    options.beta = 0.3;               // penalty min(0.1 * ln(|C| + 1), 0.3)
    options.n_threads = 1;
    medscore::Memory memory(options);
    for (int step = 0; step < kSteps; ++step) {
        const Step s = make_step(rng, mistakes);
        print_step(step, s, penalize(memory, s, step));
    }
    const medscore::KeyedMemory& engine = *memory.engine();
    std::printf("memory: keys=%zu points=%lld clusters=%lld noise=%lld\n", memory.keys().size(),
                static_cast<long long>(engine.n_points()), static_cast<long long>(engine.n_clusters()),
                static_cast<long long>(engine.n_noise()));

    medscore::save_memory(memory, path);
    medscore::Memory reloaded = medscore::load_memory(path);
    const Step next = make_step(rng, mistakes);
    const bool agree = penalize(memory, next, kSteps).penalties == penalize(reloaded, next, kSteps).penalties;
    std::printf("reloaded memory agrees: %s\n", agree ? "yes" : "no");

    // Bad input throws std::invalid_argument and leaves the memory as it was.
    Step bad = next;
    bad.fingerprints[3] = std::numeric_limits<double>::quiet_NaN();
    try {
        penalize(memory, bad, kSteps + 1);
    } catch (const std::invalid_argument& e) {
        std::printf("NaN fingerprint: %s\n", e.what());
    }
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "embed_cpp: %s\n", e.what());
    return 1;
}
