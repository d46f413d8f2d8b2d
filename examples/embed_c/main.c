/* Streams the fingerprints of four training steps into a medscore memory through the C API,
 * prints each wrong rollout's penalty, then saves, reloads and checks the reloaded memory
 * answers the next step exactly as the original. The output is deterministic (see
 * expected_output.txt); examples/embed_cpp prints the same steps through the C++ API. */
#include <medscore/medscore.h>

#include <stdint.h>
#include <stdio.h>
#include <string.h>

enum { N_KEYS = 3, ROLLOUTS = 8, DIM = 8, N = N_KEYS * ROLLOUTS, STEPS = 4 };

/* A 64-bit linear congruential generator: the same numbers on every platform. */
static uint64_t rng_state = 42;
static double uniform(void) {
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}

/* Prompt k has k + 1 typical mistakes (directions); its wrong rollouts land near one of them,
 * except the last rollout of the last prompt, which makes a new mistake every step. */
static double mistakes[N_KEYS][N_KEYS][DIM];

static void make_step(double* fingerprints, int64_t* keys, uint8_t* correct) {
    for (int i = 0; i < N; ++i) {
        const int key = i / ROLLOUTS, rollout = i % ROLLOUTS;
        keys[i] = 1000 + 17 * key;
        correct[i] = (uint8_t)(rollout % 4 == 0);
        for (int j = 0; j < DIM; ++j) {
            const int fresh = correct[i] || (key == N_KEYS - 1 && rollout == ROLLOUTS - 1);
            const double centre = fresh ? uniform() - 0.5 : mistakes[key][rollout % (key + 1)][j];
            fingerprints[i * DIM + j] = centre + 0.01 * (uniform() - 0.5);
        }
    }
}

static int check(medscore_status status, medscore_memory_t* memory) {
    if (status == MEDSCORE_OK) return 0;
    fprintf(stderr, "medscore error %d (%s): %s\n", (int)status, medscore_status_string(status),
            memory ? medscore_memory_last_error(memory) : medscore_last_error());
    return 1;
}

static void print_step(int step, const int64_t* keys, const uint8_t* correct, const double* penalties) {
    for (int k = 0; k < N_KEYS; ++k) {
        printf("step %d key %lld:", step, (long long)keys[k * ROLLOUTS]);
        for (int r = 0; r < ROLLOUTS; ++r) {
            const int i = k * ROLLOUTS + r;
            if (correct[i]) printf("    ok ");
            else printf(" %.4f", penalties[i]);
        }
        printf("\n");
    }
}

int main(int argc, char** argv) {
    const char* path = argc > 1 ? argv[1] : "embed_c_memory.ckpt";
    double fingerprints[N * DIM], penalties[N], reloaded_penalties[N];
    int64_t keys[N];
    uint8_t correct[N];
    medscore_memory_options options;
    medscore_memory_t* memory = NULL;
    medscore_memory_t* reloaded = NULL;

    for (int k = 0; k < N_KEYS; ++k)
        for (int m = 0; m < N_KEYS; ++m)
            for (int j = 0; j < DIM; ++j) mistakes[k][m][j] = uniform() - 0.5;
    if (check(medscore_memory_options_init(&options, NULL), NULL)) return 1;
    options.beta = 0.3; /* penalty min(0.1 * ln(|C| + 1), 0.3) */
    options.n_threads = 1;
    if (check(medscore_memory_create(&options, &memory), NULL)) return 1;
    for (int step = 0; step < STEPS; ++step) {
        make_step(fingerprints, keys, correct);
        if (check(medscore_memory_penalize(memory, fingerprints, N, DIM, keys, correct, NULL, step, penalties, NULL,
                                           NULL), memory)) return 1;
        print_step(step, keys, correct, penalties);
    }
    medscore_memory_info info;
    if (check(medscore_memory_get_info(memory, &info), memory)) return 1;
    printf("memory: keys=%lld points=%lld clusters=%lld noise=%lld\n", (long long)info.keys, (long long)info.points,
           (long long)info.clusters, (long long)info.noise);

    if (check(medscore_memory_save(memory, path), memory)) return 1;
    if (check(medscore_memory_load(path, 1, &reloaded), NULL)) return 1;
    make_step(fingerprints, keys, correct);
    if (check(medscore_memory_penalize(memory, fingerprints, N, DIM, keys, correct, NULL, STEPS, penalties, NULL, NULL),
              memory)) return 1;
    if (check(medscore_memory_penalize(reloaded, fingerprints, N, DIM, keys, correct, NULL, STEPS, reloaded_penalties,
                                       NULL, NULL), reloaded)) return 1;
    printf("reloaded memory agrees: %s\n", memcmp(penalties, reloaded_penalties, sizeof(penalties)) == 0 ? "yes" : "no");

    /* Bad input is an error code and a message, never a crash. */
    const medscore_status status = medscore_memory_penalize(memory, NULL, N, DIM, keys, correct, NULL, -1, penalties,
                                                            NULL, NULL);
    printf("NULL fingerprints: status %d, \"%s\"\n", (int)status, medscore_memory_last_error(memory));
    medscore_memory_free(reloaded);
    medscore_memory_free(memory);
    return 0;
}
